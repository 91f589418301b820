"""`c4c serve INDEX`: a search page and a JSON API over one index, with its model loaded once.

:func:`c4c.serve.app.create_app` builds the FastAPI app from a :class:`c4c.stages.search.Searcher`;
:mod:`c4c.serve.server` binds the socket and runs uvicorn. The page (``static/``) is the app's own
HTML, CSS and JavaScript: nothing is fetched from another site.

The one security rule: a client names a video by its id in the index, never by a path. The file to
send is looked up in the index's own table; an id the index does not hold is a 404.
"""
