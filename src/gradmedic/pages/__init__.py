"""gradmedic's HTML pages: the shell every page shares (:mod:`~gradmedic.pages.shell`, also used by
the lab's report), the report page (:mod:`~gradmedic.pages.report`), the treatment page
(:mod:`~gradmedic.pages.treatment`) and the parts both pages show (:mod:`~gradmedic.pages.parts`).
:mod:`gradmedic.html_report` re-exports their public functions.

Example:
    >>> from gradmedic.pages.shell import escape
    >>> escape("<b>")
    '&lt;b&gt;'
"""
