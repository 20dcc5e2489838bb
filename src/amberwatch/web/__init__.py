"""The web app: interactive map, readers' corrections, reviewer queue and labelling page."""
