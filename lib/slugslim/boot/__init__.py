"""Files slugslim ships into the app for run time: the .profile.d fetch script and slugslim_models.py.

They run on the dyno, not in the build: the script needs only bash and curl, the helper only the
app's own Python standard library.
"""
