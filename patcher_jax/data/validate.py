"""Small field checks shared by the loaders."""


def type_name(value) -> str:
  """The JSON name of a decoded value's type, for error messages."""
  return {dict: "object", list: "list", str: "str", bool: "bool",
          int: "int", float: "float", type(None): "null"}.get(
              type(value), type(value).__name__)


def text_field(value, what: str, fail) -> str:
  """A non-empty string, or `fail(problem)` (which raises) naming `what`."""
  if not isinstance(value, str):
    fail(f"{what} must be a string, got {type_name(value)}")
  if not value.strip():
    fail(f"{what} is empty")
  return value


def optional_text(value, what: str, fail):
  """A field only type-checked: a string or null (missing). Returns the text,
  or None when it is missing, null or blank (not an error)."""
  if value is None:
    return None
  if not isinstance(value, str):
    fail(f"{what} must be a string, got {type_name(value)}")
  return value if value.strip() else None
