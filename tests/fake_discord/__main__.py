from tests.fake_discord.standalone import main

main()
