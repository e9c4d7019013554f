"""The smoke workload: import the app (which loads both models), serve one prediction, print timings.

The bench runs it as a fresh process on the unpacked slug, the way a dyno boots, for the cold
start and for the touched-file floor. It exits non-zero if the prediction is wrong-shaped.
"""

from __future__ import annotations

import io
import json
import resource
import sys
import time

started = time.perf_counter()

import app  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

imported = time.perf_counter()

picture = Image.new("RGB", (64, 64), "white")
ImageDraw.Draw(picture).ellipse((8, 8, 56, 56), fill="black")
png = io.BytesIO()
picture.save(png, format="PNG")

response = app.app.test_client().post("/predict", data={"image": (io.BytesIO(png.getvalue()), "circle.png")})
done = time.perf_counter()
body = response.get_json()
if response.status_code != 200 or len(body.get("probabilities", [])) != 10:
    print(f"smoke: bad response {response.status_code}: {body}", file=sys.stderr)
    sys.exit(1)
# Linux reports kilobytes: the peak memory of this one web process, after it answered a request.
peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"import_seconds": imported - started, "predict_seconds": done - imported, "label": body["label"],
                  "peak_rss_bytes": peak_rss}))
