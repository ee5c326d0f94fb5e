from fixture_server import main

main()
