"""``m3dhmr app``: a local web page over the Python API (``pip install 'm3dhmr[app]'``).

- :mod:`m3dhmr.app.handlers`: what a request does (no Gradio; tested without a browser).
- :mod:`m3dhmr.app.examples`: example photos rendered by the package.
- :mod:`m3dhmr.app.ui`: the Gradio page and server (imports Gradio).
"""

#: The command that installs what the app needs beyond the package.
INSTALL_HINT = "pip install 'm3dhmr[app]'"
