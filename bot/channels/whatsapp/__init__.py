"""The WhatsApp channel over the Business Cloud API, on aiohttp: webhook in, Graph API out.

`payload` reads the webhook with typed models, `mapping` turns a message into the dialog's neutral
event, `render` turns the neutral reply into text, reply buttons or lists, and `channel` ties them to
the service and sends within the limits.
"""

CHANNEL = "whatsapp"
