"""``slugslim analyze``: what slugslim would do to an app dir or a virtualenv, changing nothing. It may
import any step, for their plans."""
