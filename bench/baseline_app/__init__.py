"""The comparison server: the Channels tutorial's chat, served by Daphne over channels-redis."""
