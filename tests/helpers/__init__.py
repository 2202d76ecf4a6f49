"""What several test files share: paths (``helpers.paths``), builders of inputs in the
DESIGN.md formats and small parsers. Importable as ``helpers`` because pyproject.toml puts
``tests/`` on pytest's ``pythonpath``; fixtures live in tests/conftest.py."""
