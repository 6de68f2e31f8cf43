"""MEDBind / MEDCSP reproduction suite: the thin library behind the numbered notebooks."""
from pathlib import Path

__version__ = "0.1.0"
ROOT = Path(__file__).resolve().parent.parent  # repo root: every relative path resolves from here
