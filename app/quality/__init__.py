"""Program quality (quality.md): diagnoses, the four outcome and process measures, and their FHIR
``Measure`` / ``MeasureReport`` form. Pure: facts and dates in, populations out, no I/O."""
