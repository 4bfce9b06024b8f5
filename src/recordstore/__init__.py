"""recordstore placeholder"""
