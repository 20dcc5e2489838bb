"""Readers' flags, reviewers' decisions and review chips: the rules every front end (web, story, loop, CLI) shares."""
