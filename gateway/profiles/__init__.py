"""Certificate profiles: TOML files validated on load into frozen :class:`Profile` values."""

from .loader import default_profiles_dir, load_profile, load_profiles, parse_profile
from .model import Profile

__all__ = ["Profile", "default_profiles_dir", "load_profile", "load_profiles", "parse_profile"]
