"""Running the app to see what it needs: the one import scanner, the import recorder, the import check,
the boot of the web process and the load check. Imports core and deps."""
