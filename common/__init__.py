"""Code shared by the gateway and the services; it imports none of them."""
