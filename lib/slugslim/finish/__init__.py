"""Phase 2 (the bin/post_compile hook, after heroku/python): ``phase`` runs the steps in order, each in
its own package or module. A step imports core, deps, appcheck, removal and its own package, never another step."""
