"""The Bus: a durable message log, consumers with cursors, acks and redelivery."""
