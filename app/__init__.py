"""ppxgb.app: the app layer on top of the roles.

The `ppxgb` command line (cli.py and one module per group of commands), the demo with
its stories and HTML report, and the deployment helpers (deploy.py: the peers file,
data loading, running and supervising role processes).  It imports the roles and the
core; nothing in the core or the roles imports it.  The package itself imports nothing.
"""
