"""The conversation as a state machine over neutral events and neutral replies.

Nothing here knows Telegram, WhatsApp, HTTP or SQL: a channel turns its platform's update into an
`events` value, `machine.Dialog` decides what happens, and the channel renders the `replies`.
"""
