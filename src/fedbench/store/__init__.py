"""Run store and feature cache."""
