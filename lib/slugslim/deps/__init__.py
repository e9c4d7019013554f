"""Dependency declarations: the requirements reader, its syntax and edits, which package manager an app
uses, its Python version, and lookups on package indexes. Imports only core."""
