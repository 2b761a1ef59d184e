"""The Channels tutorial's chat consumer (docs "Tutorial Part 3: Rewrite Chat Server
as Asynchronous"): one group per room, every message group_sent to every consumer
of the room, each consumer re-encoding it for its own socket. No database.

One addition, marked below: the sender gets an `ok` with its `ref`, so the benchmark
can time send -> acknowledgement the same way as for the product.
"""

import json

from channels.generic.websocket import AsyncWebsocketConsumer


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"

        # Join room group
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)

        await self.accept()

    async def disconnect(self, close_code):
        # Leave room group
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    # Receive message from WebSocket
    async def receive(self, text_data):
        text_data_json = json.loads(text_data)
        message = text_data_json["message"]

        # Send message to room group
        await self.channel_layer.group_send(self.room_group_name, {"type": "chat.message", "message": message})
        # Not in the tutorial: acknowledge the send (after group_send returned).
        ref = text_data_json.get("ref")
        if ref is not None:
            await self.send(text_data=json.dumps({"type": "ok", "ref": ref}))

    # Receive message from room group
    async def chat_message(self, event):
        message = event["message"]

        # Send message to WebSocket
        await self.send(text_data=json.dumps({"message": message}))
