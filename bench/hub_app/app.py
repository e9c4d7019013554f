"""The bench-hub app: all-MiniLM-L6-v2, named by its Hub id and loaded at import, served by Flask.

Where the model comes from is the Hub client's business: HF_ENDPOINT (a config var) says which Hub,
and slugslim's .profile.d may point HF_HUB_CACHE at the copy baked into the slug.
"""

from flask import Flask, jsonify, request
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
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
