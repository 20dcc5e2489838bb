"""Static story pages where detection fragments flow with the article text and lead to the map."""
