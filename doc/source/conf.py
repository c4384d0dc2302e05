"""Sphinx configuration of the glance-store-remote documentation."""

project = 'glance-store-remote'
copyright = 'glance-store-remote developers'
extensions = [
    'oslo_config.sphinxext',
]
exclude_patterns = ['build']
html_theme = 'alabaster'
html_static_path = []
master_doc = 'index'
