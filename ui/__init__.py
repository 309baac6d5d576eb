"""Templates, static files and translations of the box's and the hub's pages."""
from pathlib import Path

UI_DIR = Path(__file__).resolve().parent
