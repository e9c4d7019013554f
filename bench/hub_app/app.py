"""The bench-hub app: all-MiniLM-L6-v2, named by its Hub id and loaded at import, served by Flask.

Where the model comes from is the Hub client's business: HF_ENDPOINT (a config var) says which Hub,
and slugslim's .profile.d may point HF_HUB_CACHE at the copy baked into the slug. The model loads
through slugslim's loader where the slug has it (on ONNX Runtime when slugslim converted the model,
else sentence-transformers itself), and through sentence-transformers where it has not: the same app
runs stock, on PyTorch with slugslim, and on ONNX Runtime.
"""

from flask import Flask, jsonify, request

try:
    from slugslim_models import SentenceEncoder
except ImportError:
    from sentence_transformers import SentenceTransformer as SentenceEncoder

model = SentenceEncoder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
app = Flask(__name__)


@app.get("/")
def index() -> object:
    """One sentence encoded: the first answer is proof that the model works."""
    vector = model.encode("slugslim bakes Hub models into the slug")
    return jsonify(dimensions=len(vector), norm=round(float((vector**2).sum() ** 0.5), 3))


@app.post("/embed")
def embed() -> object:
    """{"texts": [...]} -> {"embeddings": [[...], ...]} (normalized, 384 dimensions)."""
    texts = (request.get_json(silent=True) or {}).get("texts") or []
    return jsonify(embeddings=model.encode(list(texts)).tolist())
