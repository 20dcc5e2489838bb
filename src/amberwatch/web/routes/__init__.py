"""HTTP routes of the web app, one small module per area (map data, feedback, labelling, pages)."""
