"""Notifications: buyers and sellers told of each milestone of their return, in their
market's language, through the notification provider, each message exactly once."""
