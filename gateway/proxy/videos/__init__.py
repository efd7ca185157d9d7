"""Video jobs: submission, polling and metering (``jobs``), and what the owner sees."""
