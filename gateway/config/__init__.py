"""Configuration: YAML files read and validated into frozen dataclasses, and process options."""
