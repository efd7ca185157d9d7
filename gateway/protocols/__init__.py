"""Client-facing API translation: the Responses and Messages APIs over chat completions."""
