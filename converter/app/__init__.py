"""The app around the converter: jobs, batch, the watched folder, the report page, the desktop
launcher and its settings."""
