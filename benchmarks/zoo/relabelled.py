"""Why training contradicted each relabelled report (see ``labels.json``): what the runs showed.

Each note states the measured learned fractions (best rate, mean of two seeds) and what they mean
for the report; the report itself is kept as it was found.
"""

from __future__ import annotations

RELABELLED: dict[str, str] = {
    "single_relu_unit_negative_weights": "the unit with both weights negative still trains (0.91): with "
    "its bias drawn from U(-0.05, 0.05) it is alive on some inputs and recovers",
    "softmax_layer_then_log_loss": "the Softmax layer with -log(p) trains as well as the fused loss "
    "(1.00 both) in float32 PyTorch on digits",
    "wavenet_relu_postprocessing": "within 300 steps the loss did not climb back; ReLU and Tanh "
    "post-processing trained alike (0.54, 0.52)",
    "rnn_jumps_to_flat_region": "the RNN stalls (0.04) but its gradient norm never reaches the "
    "clipping threshold, so clipping changes nothing (0.04)",
    "relu_rnn_default_init": "a ReLU RNN with PyTorch's default init trains the 25-step adding problem "
    "with Adam (0.97); the identity init did worse (0.41)",
    "lstm_seq2dense_forecast": "the LSTM as posted trains (0.54); forget-gate bias 1 does better "
    "(0.74) but not by the 0.2 the label asks",
    "rnn_noisy_sine_predicts_mean": "the RNN learns the noisy sine in PyTorch (0.98) at the posted "
    "settings; standardising changes nothing",
    "bare_sigmoid_wx_saturated": "at rate 100 the saturated sigmoid(Wx) still trains (0.78); the "
    "small init does better (0.93) but not by 0.2",
    "bare_rnn_scratch_no_clipping": "at rate 1 and 32 steps the bare RNN did not explode in 300 steps "
    "(0.54 without clipping, 0.59 with)",
    "bare_repeated_columns": "rows of the weight are constant, not columns: after one step each row "
    "gets g_i x, symmetry breaks and the model trains (1.00)",
    "post_ln_transformer_no_warmup": "the 6-layer Post-LN encoder (d 64) trains without warm-up at "
    "Adam 1e-3 (0.91; Pre-LN 0.95): too small to show the instability",
}
