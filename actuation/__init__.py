"""actuation"""
