"""glance-store-remote: an edge Glance that reads its images from a central
Glance through the ``remote-glance`` glance_store driver."""
