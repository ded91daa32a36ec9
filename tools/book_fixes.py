"""Sphinx extension with the book's workarounds for bugs in the pinned toolchain (Jupyter Book 1.0.4).

Loaded from _config.yml (``sphinx: local_extensions``). Each fix says what it works around, so it can
be dropped when the bug is gone.
"""

from __future__ import annotations


def drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    """Keep one copy of each <script> on a page.

    Sphinx 7.4 lists an inline script that an extension adds after the builder started (sphinx-thebe's
    ``const THEBE_JS_URL = ...``, sphinx-togglebutton's selector) twice: once under the file name
    ``None`` and once under ``''``, which its de-duplication treats as different. The second
    ``const`` declaration then throws "Identifier 'THEBE_JS_URL' has already been declared" on every
    page. Two scripts are the same here when their file name (None and '' alike), priority and
    attributes (the inline body included) are.
    """
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)  # after the page's own scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
