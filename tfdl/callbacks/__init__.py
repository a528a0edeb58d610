"""The callback stack (stack.py) and the callbacks Keras lacks; schema.py is its config."""
