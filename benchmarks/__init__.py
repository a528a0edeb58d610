"""Speed, overhead and memory measurements of tfdl (`make bench`); not tests."""
