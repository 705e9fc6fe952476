"""The embedded demo: everything that lets the whole graph run offline on a laptop CPU.

``synth`` draws seeded scenes of four task families (and composed questions, a held-out benchmark,
detection scenes); ``sources`` turns them into generated sources with seeded faults; ``teacher`` is
the scripted teacher behind the ``scripted`` backend; ``models`` builds the tiny students and
warms them up. Production modules reach the demo only through the backend registry
(``mmfr.generate.BACKENDS``) and the generated-source hook (``mmfr.sources.GENERATOR``).
"""
