"""An emulation of a Heroku classic build, for slugslim's tests, demo and benchmark."""
