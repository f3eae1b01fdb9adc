"""`python -m launch`: the launchers, and the allocator settings in effect (allocator.py)."""

from launch import allocator

print("python -m launch.run       smooth images (--method=dip_l0|dip|l0|fan2018)")
print("python -m launch.evaluate  score a method on a dataset with ground truth")
print("python -m launch.train     train the fan2018 network")
print(allocator.status())
