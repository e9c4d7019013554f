"""What every part of slugslim shares: settings, errors (their words), the build log, the catalogue of
framework builds, installed metadata, the app's models and Python, state. Imports nothing else of slugslim."""
