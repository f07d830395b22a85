"""The views: thin anywidget classes that turn traits into compute calls and results into traits."""
