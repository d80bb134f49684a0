"""nanochat"""
