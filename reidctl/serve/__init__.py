"""``reidctl serve``: a search service over one gallery, with a web page.

:func:`~reidctl.serve.app.create_app` builds the FastAPI app over an open
:class:`~reidctl.api.Gallery`; ``reidctl serve`` (``reidctl/cli/serve_cmd.py``) opens the
gallery, checks the bind address and the token, and runs it with uvicorn. The endpoints
are listed at ``/docs`` (OpenAPI); the page in ``static/`` is served at ``/``.
"""
