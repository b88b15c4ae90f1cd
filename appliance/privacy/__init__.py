"""Privacy proof for trained adapters: canaries planted at import, and their exposure
(Carlini et al., "The Secret Sharer", USENIX Security 2019) measured on the adapter."""
