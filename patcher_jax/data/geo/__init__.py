"""The embedded default benchmark: geography facts that ship in packages."""
