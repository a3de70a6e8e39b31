# A well-behaved sdist: installed into an environment by setup.py, in the
# install's sandbox.
from setuptools import setup

setup(name="kind", version="1.0", py_modules=["kind"])
