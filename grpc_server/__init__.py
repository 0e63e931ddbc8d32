"""The gRPC AnalyzeService server, results listener and client. Not built yet: see issue 4."""
