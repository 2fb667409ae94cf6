"""Telling buyers and sellers where their return stands (pure): which events are milestones
and for whom (milestones.py), each return's outbox of messages with its retries
(outbox.py), and a message's words in the reader's language (message_texts.py)."""
